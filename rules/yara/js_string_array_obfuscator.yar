rule js_string_array_obfuscator
{
    meta:
        description = "many _0x-prefixed identifiers: output of a string-array JavaScript obfuscator"
        category = "obfuscation"
        severity = "medium"
        state = "enabled"
    strings:
        $hex_ident = /_0x[0-9a-f]{4,6}\b/
    condition:
        #hex_ident > 25
}
