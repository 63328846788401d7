"""Counseling fidelity: MITI coding (embedded coder, LLM judge), coder validation, CTRS, safety."""
