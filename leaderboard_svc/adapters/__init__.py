"""Implementations of the leaderboard store port."""
