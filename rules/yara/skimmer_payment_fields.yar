rule skimmer_payment_fields
{
    meta:
        description = "reads payment-card fields and encodes data for sending (skimmer shape)"
        category = "exfiltration"
        severity = "high"
        state = "evaluation"
    strings:
        $card1 = "cc_number" nocase
        $card2 = "cardnumber" nocase
        $card3 = "card_number" nocase
        $card4 = "card-number" nocase
        $cvv1 = "cvv" nocase fullword
        $cvv2 = "cvc" nocase fullword
        $enc1 = "btoa(" fullword
        $enc2 = "encodeURIComponent(" fullword
        $send1 = "sendBeacon(" fullword
        $send2 = "new Image" fullword
        $send3 = "XMLHttpRequest" fullword
        $send4 = "fetch(" fullword
        $listen = "addEventListener(" fullword
    condition:
        any of ($card*) and any of ($cvv*) and any of ($enc*) and any of ($send*) and $listen
}
