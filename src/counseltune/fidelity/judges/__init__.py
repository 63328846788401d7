"""LLM judges: MITI coding and global scores, CTRS, their prompts, answer bounds and validation against human codes."""
