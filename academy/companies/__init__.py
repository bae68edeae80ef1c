"""Company contacts: a person bound to one company who follows its employees' learning."""
