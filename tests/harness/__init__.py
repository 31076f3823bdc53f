"""The one test harness, for the tests and the benches (imported as `tests.harness.*`; the bench
scripts put the repository root on sys.path).

Fake servers, each an async context manager on a free loopback port (loopback.LoopbackServer):
    openai_server.FakeOpenAI      the OpenAI API (chat, embeddings, moderations, files, fine-tuning)
    slack_api.FakeSlack           the Slack Web API and Socket Mode
    discord_api.FakeDiscord       Discord's gateway and REST API
    discord_webhooks.FakeWebhooks Discord's interaction webhooks
    qdrant_api.FakeQdrant         Qdrant's REST API over qdrant-client's local engine
Payloads shaped as the platforms document them: slack_payloads, discord_payloads (ids.Rising).
Building what the adapter tests run on: stack.Stack (the `stack` fixture), stack.SlackDoor, stack.until.
Processes: redis_server.RedisServer, processes (the `advisor` command as a subprocess, its environment,
terminate), loopback (free_port, serve).
"""
