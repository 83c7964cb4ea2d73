"""Tests of Tepui's own frameworks."""
