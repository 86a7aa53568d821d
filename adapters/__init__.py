"""adapters: the shield inside other generation stacks (each adapter imported explicitly).

Nothing here is imported by ``shield``, ``specs`` or ``decoders``; an adapter's framework (torch,
transformers) is an optional extra.
"""
