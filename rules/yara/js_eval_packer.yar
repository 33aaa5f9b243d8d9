rule js_eval_packer
{
    meta:
        description = "code packed with an eval-based packer (Dean Edwards style p,a,c,k,e)"
        category = "obfuscation"
        severity = "high"
        state = "enabled"
    strings:
        $packer = /eval\(function\(p,a,c,k,e,[rd]\)/
    condition:
        $packer
}
