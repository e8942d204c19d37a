print("demo not yet")
