rule python_reverse_shell
{
    meta:
        description = "Python that wires a socket to a shell (reverse or bind shell)"
        category = "backend-code"
        severity = "critical"
        state = "enabled"
    strings:
        $sock = /\bsocket\.socket\(/
        $dup2 = /\bos\.dup2\(/
        $pty = /\bpty\.spawn\(/
        $sh1 = "/bin/sh" fullword
        $sh2 = "/bin/bash" fullword
        $sh3 = "cmd.exe" nocase fullword
        $connect = /\b\.connect\(\(/
    condition:
        extension == "py" and $sock and $connect and ($dup2 or $pty) and any of ($sh*)
}
