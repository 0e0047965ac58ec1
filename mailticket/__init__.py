"""mailticket: turns a support mailbox into tickets with exclusive claims and measured response times."""

__version__ = "0.1.0"
