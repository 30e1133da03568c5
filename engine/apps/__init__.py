"""Apps and integrations: each app's template, the user profile flows see, integrations.

May import `engine.storage`; nothing above it.
"""
