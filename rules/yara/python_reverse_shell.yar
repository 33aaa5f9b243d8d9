rule python_reverse_shell
{
    meta:
        description = "Python that wires a socket to a shell (reverse or bind shell)"
        category = "backend-code"
        severity = "critical"
        state = "enabled"
    strings:
        $sock = "socket.socket(" fullword
        $dup2 = "os.dup2(" fullword
        $pty = "pty.spawn(" fullword
        $sh1 = "/bin/sh" fullword
        $sh2 = "/bin/bash" fullword
        $sh3 = "cmd.exe" nocase fullword
        $connect = ".connect((" fullword
    condition:
        extension == "py" and $sock and $connect and ($dup2 or $pty) and any of ($sh*)
}
