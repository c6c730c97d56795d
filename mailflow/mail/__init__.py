"""Bytes to meaning and back: parse inbound mail, read requests and replies, render templates."""
