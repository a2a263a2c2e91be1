"""From texts to arrays: candidate sources (LLM prior samples or every admissible action) and the featurizer that
turns (observation, action) pairs into int32 rows of a feature table for the pure RL core."""
