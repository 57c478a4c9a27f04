"""modelherd: a pull-request bot for shipping ML models safely."""
