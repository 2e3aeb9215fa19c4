"""Deploying stacks: the scheduler over the dependency graph, and one stack's steps."""
