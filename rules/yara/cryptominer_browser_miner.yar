rule cryptominer_browser_miner
{
    meta:
        description = "embeds a browser cryptocurrency miner (CryptoNight/RandomX in workers or wasm)"
        category = "cryptomining"
        severity = "critical"
        state = "enabled"
    strings:
        $algo1 = "cryptonight" nocase
        $algo2 = "randomx" nocase
        $lib1 = "CoinHive" nocase
        $lib2 = "coinimp" nocase
        $lib3 = "webminepool" nocase
        $lib4 = "deepMiner" nocase
        $lib5 = "minero.cc" nocase
        $lib6 = "authedmine" nocase
        $throttle = "throttle" nocase
        $hashes = "hashesPerSecond" nocase
        $wasm = "WebAssembly" fullword
        $worker = /\bWorker\(/
    condition:
        any of ($lib*) or (any of ($algo*) and ($wasm or $worker) and ($throttle or $hashes))
}
