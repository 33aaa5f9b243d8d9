rule exfil_chat_webhook
{
    meta:
        description = "posts to a chat webhook or bot API, the usual drop for stolen data"
        category = "exfiltration"
        severity = "high"
        state = "enabled"
    strings:
        $discord = /discord(app)?\.com\/api\/webhooks\/[0-9]{5}/
        $telegram = /api\.telegram\.org\/bot[0-9]{5}/
        $telegram_send = "api.telegram.org/bot" nocase
        $slack = "hooks.slack.com/services/" nocase
    condition:
        any of them
}
