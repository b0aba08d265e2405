"""The caption-enhancement op's pure logic: presets, where captions are in a row and where
their rewrites go, the length bound in a target tokenizer, records, and store keys."""
