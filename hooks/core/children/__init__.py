"""Builders of a Workspace's children: pure functions from the Workspace to Kubernetes dicts."""
