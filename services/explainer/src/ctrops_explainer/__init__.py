"""The explainer service of the CTR AIOps platform."""
