"""Images and disks: where a workspace's disks come from and where they go on its node.

- ``repository``: the image repository (local files, allowed downloads) and their checksums.
- ``cache``: the rule every node's base cache follows (``BaseCache``, ``cached_base``, ``room_for``);
  ``eviction`` says which bases go and which are held (``Holds``); ``locks`` orders the work.
- ``files``: ``DomainFiles``, where one domain's disks go, with two implementations:
  ``local`` (state-dir files, for nodes that read them) and ``volumes`` (libvirt storage volumes
  uploaded over the node's own connection).
- ``claims``: which workspace holds which partition; ``prepare``: a workspace's disks through
  ``DomainFiles``.
"""
