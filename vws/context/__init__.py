"""Contextualization: the context broker's domain (contexts, members, what each is owed) and
the agent a member's guest runs. The SOAP port type and the agents' HTTP door are in vws/soap."""
