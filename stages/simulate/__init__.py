"""Survey simulator: BOSS-like spPlate files with a truth table."""
