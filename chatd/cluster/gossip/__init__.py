"""A small SWIM + Lifeguard membership library, modelled on HashiCorp memberlist.

``node.Node`` is the protocol over an abstract clock and transport (``base``);
``runtime.Gossip`` runs it in the server on UDP and sealed TCP streams.
"""
