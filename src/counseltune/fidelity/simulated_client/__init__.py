"""Simulated sessions: intake profiles and an LLM role-playing the client opposite the counselor under test."""
