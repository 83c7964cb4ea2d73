"""Tepui."""
