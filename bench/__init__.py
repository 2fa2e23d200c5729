"""``make bench``: synthetic contact files and the measurements the README's performance section shows."""
