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
        $enc1 = /\bbtoa\(/
        $enc2 = /\bencodeURIComponent\(/
        $send1 = /\bsendBeacon\(/
        $send2 = /\bnew Image\b/
        $send3 = "XMLHttpRequest" fullword
        $send4 = /\bfetch\(/
        $listen = /\baddEventListener\(/
    condition:
        any of ($card*) and any of ($cvv*) and any of ($enc*) and any of ($send*) and $listen
}
