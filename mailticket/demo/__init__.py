"""`mailticket demo`: the product with no config and no outside servers (run.py), its sandbox mail server
(sandbox.py), sample mail (mail.py) and its own page (page.py)."""
