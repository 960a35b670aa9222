nseries = 4
