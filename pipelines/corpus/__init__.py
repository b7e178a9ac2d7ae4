"""The synthetic corpus generator and the phrasings it draws on."""
