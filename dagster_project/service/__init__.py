"""Personalised service: the agent view, save offers for cancel attempts, reply drafts for open
tickets, and the export of tags and context fields to the ESP and a helpdesk."""
