//! I/O: the event loop.
