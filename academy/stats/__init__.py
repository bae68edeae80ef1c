"""The province's statistics: the completion funnel and what the labs were used for, by any dimension."""
