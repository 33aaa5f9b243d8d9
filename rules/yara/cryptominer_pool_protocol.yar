rule cryptominer_pool_protocol
{
    meta:
        description = "talks the Stratum mining-pool protocol"
        category = "cryptomining"
        severity = "critical"
        state = "enabled"
    strings:
        $stratum_tcp = "stratum+tcp://" nocase
        $stratum_ssl = "stratum+ssl://" nocase
        $login = "\"method\":\"login\"" nocase
        $submit = "\"method\":\"submit\"" nocase
        $job = "\"method\":\"job\"" nocase
    condition:
        any of ($stratum*) or ($login and $submit and $job)
}
