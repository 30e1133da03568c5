"""Jobs: the one state machine, the outbox, the queue, the relay, the worker and the runner.

Owns every transition of a Job. May import `engine.storage`, `engine.apps`,
`engine.planner` and `engine.automation`.
"""
