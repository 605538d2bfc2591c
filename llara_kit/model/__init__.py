"""Model parts: the LLM backbone, prompt templates and their lengths, batches, projectors,
objectives, curriculum schedules, the LLaRA module and inference."""
