"""Built-in benchmark prompts, written for this project, by category (chat messages)."""

from __future__ import annotations

_ARTICLES = [
    """The city council of Riverton voted on Tuesday to approve a new public transportation plan that will add three bus routes, extend the light rail line to the airport, and introduce a bike-sharing program with 500 bicycles across 40 stations. The plan, which will cost an estimated 240 million dollars over the next eight years, was approved by a vote of seven to two. Mayor Elena Torres said the plan would reduce traffic congestion and help the city meet its goal of cutting carbon emissions by 40 percent by 2035. Council member James Whitfield, who voted against the plan, argued that the cost was too high and that the city should focus on repairing existing roads first. The light rail extension is expected to be completed in 2029, while the new bus routes will begin service next spring. The bike-sharing program will launch in the summer, with the first 20 stations located in the downtown area and near the university campus.""",  # noqa: E501
    """A team of marine biologists from the Northern Coast Research Institute has reported that the population of harbor seals along the eastern shoreline grew by 18 percent over the past five years. The researchers counted the seals from aerial photographs taken each August, when the animals gather on rocky beaches to rest and molt. Dr. Priya Nair, who led the survey, said the increase was likely due to a ban on commercial net fishing in the area that took effect six years ago, which reduced the number of seals caught accidentally. The team also found that pups made up a larger share of the population than in earlier surveys, a sign that the colonies are healthy. However, the report warns that rising water temperatures could reduce the fish stocks the seals depend on. The institute plans to repeat the survey every year and to attach tracking tags to 30 seals next spring to learn where they feed.""",  # noqa: E501
    """The regional library network announced that it will extend its opening hours and add evening study rooms at eleven branches starting in September. The change follows a survey of more than 6,000 library users, two thirds of whom said they could not visit during the current hours because of work or school. Under the new schedule, the branches will stay open until 9 p.m. on weekdays and open two hours earlier on Saturdays. The network will hire 24 additional staff members and pay for the change with a grant from the state education fund and savings from a new energy-efficient lighting system. Library director Samuel Okafor said the study rooms can be booked online for up to three hours at a time and will be equipped with whiteboards and power outlets. The network will review visitor numbers after one year to decide whether to extend the longer hours to its remaining branches.""",  # noqa: E501
]

CATEGORIES: dict[str, list[str]] = {
    "summarization": [
        f"Summarize the following article in a few sentences, reusing its wording.\n\n{a}" for a in _ARTICLES
    ],
    "chat": [
        "What are three good habits for staying focused while working from home?",
        "Explain the difference between weather and climate to a ten-year-old.",
        "Give me a short packing list for a weekend camping trip.",
    ],
    "code": [
        "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring.",
        "Write a Python function that checks whether a string is a palindrome, ignoring case and spaces.",
        "Write a Python class Stack with push, pop and peek methods.",
    ],
    "translation": [
        "Translate into French: The library will stay open until nine in the evening on weekdays.",
        "Translate into Spanish: We are planning a trip to the mountains next summer with our friends.",
        "Translate into German: The weather was cold, so we stayed inside and read books all afternoon.",
    ],
    "math": [
        "A shop sells pencils at 3 for 45 cents. How much do 12 pencils cost? Explain step by step.",
        "Solve for x: 3x + 7 = 25. Show your steps.",
        "A train travels 180 km in 2 hours and 30 minutes. What is its average speed in km/h? Explain.",
    ],
    "qa": [
        f"Answer using only the text below: how long will the longer opening hours last before they are "
        f"reviewed, and how many branches get them?\n\n{_ARTICLES[2]}",
        f"Answer using only the text below: what caused the seal population to grow?\n\n{_ARTICLES[1]}",
    ],
}


def messages(category: str) -> list[list[dict[str, str]]]:
    """The category's prompts as single-turn chat conversations."""
    return [[{"role": "user", "content": p}] for p in CATEGORIES[category]]
