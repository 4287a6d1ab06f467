"""Tests of the in-process fakes (fake provider, Langfuse emulator, server thread)."""
