"""Git webhooks on Komodo's paths: ``forges`` checks and parses what a forge sends (pure),
``listener`` answers ``/listener/...`` and turns a push into work (a sync run, an intent, a pull).
"""
