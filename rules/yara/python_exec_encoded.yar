rule python_exec_encoded
{
    meta:
        description = "Python that runs code it decodes or decompresses (a loader)"
        category = "backend-code"
        severity = "critical"
        state = "enabled"
    strings:
        $exec1 = "exec(" fullword
        $exec2 = "eval(" fullword
        $exec3 = "compile(" fullword
        $dec1 = "b64decode(" fullword
        $dec2 = "zlib.decompress(" fullword
        $dec3 = "marshal.loads(" fullword
        $dec4 = "codecs.decode(" fullword
        $dec5 = "bytes.fromhex(" fullword
        $dec6 = "lzma.decompress(" fullword
    condition:
        extension == "py" and any of ($exec*) and any of ($dec*)
}
