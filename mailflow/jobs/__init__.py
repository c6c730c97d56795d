"""Timed work: reminders, escalations, window ends and the weekly digest."""
