"""The SELMA recipe, stage by stage: skill prompts (datagen) -> images (generate) -> one LoRA per skill (train)
-> merged experts (merge); variants name the results.
"""
