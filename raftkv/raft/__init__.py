"""Sans-I/O Raft: the consensus core, modelled on etcd-io/raft.

No asyncio, sockets, files or clocks in this package: time enters only as ``tick()``, and
everything the caller must do comes out of ``Ready`` batches.
"""
