"""``tepui sim``: thousands of simulated agents in one process, for scale tests of a real master."""
