"""`advisor finetune`: build, check, launch and compare OpenAI chat fine-tunes of the advisor."""
