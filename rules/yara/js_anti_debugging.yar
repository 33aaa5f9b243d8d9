rule js_anti_debugging
{
    meta:
        description = "a debugger trap that fires in a loop, used to stop people reading the code"
        category = "obfuscation"
        severity = "medium"
        state = "evaluation"
    strings:
        $trap1 = /setInterval\(\s*function\s*\(\)\s*\{\s*debugger/
        $trap2 = /setInterval\(\s*\(\)\s*=>\s*\{\s*debugger/
        $ctor = /constructor\(\s*["']debugger["']\s*\)/
    condition:
        any of them
}
