rule python_exec_encoded
{
    meta:
        description = "Python that runs code it decodes or decompresses (a loader)"
        category = "backend-code"
        severity = "critical"
        state = "enabled"
    strings:
        $exec1 = /\bexec\(/
        $exec2 = /\beval\(/
        $exec3 = /\bcompile\(/
        $dec1 = /\bb64decode\(/
        $dec2 = /\bzlib\.decompress\(/
        $dec3 = /\bmarshal\.loads\(/
        $dec4 = /\bcodecs\.decode\(/
        $dec5 = /\bbytes\.fromhex\(/
        $dec6 = /\blzma\.decompress\(/
    condition:
        extension == "py" and any of ($exec*) and any of ($dec*)
}
