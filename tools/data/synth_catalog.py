"""The demo shop's catalog: a grocery and pet-food taxonomy, item names, prices and pairings.

Everything here is static text or seeded draws; `synth_process` decides who buys what.
Brands are invented; product words are ordinary grocery and pet-supply vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# id | display name | domain | min price | max price | complements | products | variants | sizes
# (lists inside a field are ';'-separated). Complements are the categories a shopper tends to
# look at next (coffee -> creamer): they drive item-to-item transitions inside a session.
_CATEGORY_TABLE = """
dog_food_dry|Dry Dog Food|pet|16|68|dog_treats;dog_food_wet;pet_supplements|Dry Dog Food;Kibble|Chicken & Brown Rice;Lamb & Rice;Grain-Free Salmon;Puppy Formula;Senior Formula;Large Breed Beef;Small Breed Turkey|5 lb;15 lb;30 lb
dog_food_wet|Wet Dog Food|pet|12|42|dog_food_dry;dog_treats|Canned Dog Food;Dog Food Stew;Dog Food Trays|Beef & Vegetable;Chicken Pate;Turkey & Sweet Potato;Lamb Casserole;Hearty Chicken|12 x 13 oz;24 x 3.5 oz;6 x 22 oz
dog_treats|Dog Treats|pet|4|19|dog_food_dry;dog_food_wet|Jerky Strips;Dental Chews;Biscuits;Training Bites;Rawhide-Free Chews|Chicken;Peanut Butter;Bacon Flavor;Sweet Potato;Duck|6 oz;12 oz;24 oz
cat_food_dry|Dry Cat Food|pet|10|46|cat_litter;cat_food_wet;cat_treats|Dry Cat Food;Cat Kibble|Indoor Chicken;Salmon & Rice;Hairball Control;Kitten Formula;Senior Formula;Grain-Free Turkey|3 lb;7 lb;16 lb
cat_food_wet|Wet Cat Food|pet|10|38|cat_food_dry;cat_treats|Pate;Flaked Entree;Cuts in Gravy|Tuna;Chicken;Ocean Whitefish;Salmon;Turkey & Giblets|12 x 3 oz;24 x 3 oz;24 x 5.5 oz
cat_treats|Cat Treats|pet|3|13|cat_food_wet;cat_food_dry|Crunchy Treats;Lickable Puree;Freeze-Dried Bites|Chicken;Tuna;Salmon;Catnip|2.1 oz;6 oz;16 oz
cat_litter|Cat Litter|pet|9|32|cat_food_dry;cat_treats|Clumping Litter;Pellet Litter;Crystal Litter|Unscented;Multi-Cat;Lavender;Low Dust;Pine|10 lb;20 lb;40 lb
small_animal_food|Small Animal Food|pet|6|26|pet_supplements;bird_seed|Timothy Hay;Rabbit Pellets;Guinea Pig Food;Hamster Mix|Original;Fortified;Orchard Grass;Fruit & Veggie|2 lb;5 lb;10 lb
bird_seed|Bird Seed|pet|6|30|small_animal_food|Wild Bird Seed;Parakeet Seed;Cockatiel Mix;Suet Cakes|No-Waste;Sunflower;Fruit & Nut;Songbird|5 lb;10 lb;20 lb
fish_food|Fish Food|pet|4|16|pet_supplements|Tropical Flakes;Goldfish Pellets;Betta Pellets;Algae Wafers|Color Enhancing;Original;Sinking;Floating|1 oz;2.2 oz;7 oz
pet_supplements|Pet Supplements|pet|10|36|dog_food_dry;cat_food_dry|Joint Support Chews;Fish Oil;Probiotic Powder;Calming Chews;Multivitamin|Hip & Joint;Skin & Coat;Digestive;Everyday|60 ct;120 ct;8 oz
coffee|Coffee|grocery|7|26|creamer_sweetener;cookies|Whole Bean Coffee;Ground Coffee;Coffee Pods|Colombian;French Roast;Breakfast Blend;Decaf House;Espresso;Hazelnut|12 oz;2 lb;24 ct
tea|Tea|grocery|3|16|honey_jam_spreads;creamer_sweetener|Green Tea;Black Tea;Herbal Tea;Chai|Jasmine;Earl Grey;Chamomile;Peppermint;English Breakfast;Masala|20 bags;50 bags;100 bags
creamer_sweetener|Creamer & Sweetener|grocery|3|11|coffee;tea|Coffee Creamer;Sweetener Packets;Cane Sugar|French Vanilla;Original;Stevia;Caramel;Hazelnut|16 oz;100 ct;4 lb
breakfast_cereal|Breakfast Cereal|grocery|3|8|oatmeal_granola;juice|Cereal;Corn Flakes;Bran Flakes|Honey Nut;Frosted;Whole Grain;Cinnamon;Berry|12 oz;18 oz;2 x 20 oz
oatmeal_granola|Oatmeal & Granola|grocery|3|10|nuts_dried_fruit;honey_jam_spreads|Instant Oatmeal;Rolled Oats;Granola|Maple Brown Sugar;Apple Cinnamon;Almond Crunch;Plain;Blueberry|10 ct;42 oz;16 oz
pasta|Pasta|grocery|1.5|7|pasta_sauce;spices_seasonings|Spaghetti;Penne;Fusilli;Elbow Macaroni;Egg Noodles|Durum Wheat;Whole Wheat;Gluten-Free;Organic|16 oz;2 lb;6 x 16 oz
pasta_sauce|Pasta Sauce|grocery|2.5|9|pasta|Marinara;Alfredo Sauce;Pesto;Tomato Basil Sauce|Classic;Roasted Garlic;Four Cheese;Spicy;Organic|15 oz;24 oz;2 x 24 oz
rice_grains|Rice & Grains|grocery|2|13|spices_seasonings;canned_vegetables_beans|Jasmine Rice;Basmati Rice;Quinoa;Brown Rice;Couscous|Long Grain;Organic;Tri-Color;Parboiled|2 lb;5 lb;10 lb
canned_soup|Canned Soup|grocery|1.5|6|crackers|Chicken Noodle Soup;Tomato Soup;Minestrone;Lentil Soup|Classic;Low Sodium;Hearty;Organic|10.5 oz;18.6 oz;12 x 10.5 oz
canned_vegetables_beans|Canned Vegetables & Beans|grocery|1|5|rice_grains|Black Beans;Chickpeas;Sweet Corn;Green Beans;Diced Tomatoes|No Salt Added;Organic;Classic|15 oz;29 oz;8 x 15 oz
baking_supplies|Baking Supplies|grocery|2|13|chocolate;spices_seasonings|All-Purpose Flour;Baking Soda;Cake Mix;Pancake Mix;Yeast|Unbleached;Gluten-Free;Buttermilk;Chocolate Fudge|1 lb;5 lb;3 pack
spices_seasonings|Spices & Seasonings|grocery|2|11|oils_vinegar;pasta|Ground Cinnamon;Black Pepper;Garlic Powder;Italian Seasoning;Smoked Paprika;Sea Salt|Organic;Fine Ground;Coarse;Classic|2 oz;6 oz;16 oz
condiments|Condiments|grocery|2|8|chips_pretzels;salsa_dips|Ketchup;Yellow Mustard;Mayonnaise;Hot Sauce;BBQ Sauce|Classic;Spicy;Organic;Reduced Sugar|12 oz;20 oz;2 pack
oils_vinegar|Oils & Vinegar|grocery|4|21|spices_seasonings;pasta|Extra Virgin Olive Oil;Avocado Oil;Balsamic Vinegar;Apple Cider Vinegar;Coconut Oil|Cold Pressed;Organic;Unfiltered;Classic|16.9 oz;33.8 oz;1 gal
chips_pretzels|Chips & Pretzels|grocery|2|7|salsa_dips;soft_drinks|Kettle Chips;Tortilla Chips;Pretzel Twists;Veggie Straws|Sea Salt;Sour Cream & Onion;Barbecue;Jalapeno;Lightly Salted|8 oz;13 oz;variety 30 ct
crackers|Crackers|grocery|2|7|canned_soup;honey_jam_spreads|Crackers;Rice Crackers;Graham Crackers|Whole Wheat;Sea Salt;Cheddar;Honey;Multigrain|7 oz;13.7 oz;3 pack
cookies|Cookies|grocery|2.5|8|coffee;candy|Chocolate Chip Cookies;Shortbread;Oatmeal Cookies;Sandwich Cookies|Classic;Soft Baked;Mini;Double Chocolate|8 oz;13 oz;family size
candy|Candy|grocery|1.5|11|chocolate;popcorn|Salt Water Taffy;Gummy Bears;Licorice Twists;Hard Candy;Jelly Beans|Assorted Fruit;Sour;Cherry;Peppermint|5 oz;1 lb;5 lb
chocolate|Chocolate|grocery|2|13|candy;cookies|Dark Chocolate Bar;Milk Chocolate Bar;Chocolate Truffles;Cocoa Powder|72% Cacao;Sea Salt Caramel;Almond;Mint|3.5 oz;12 ct;8 oz
nuts_dried_fruit|Nuts & Dried Fruit|grocery|4|19|energy_protein_bars;oatmeal_granola|Roasted Almonds;Cashews;Mixed Nuts;Dried Cranberries;Trail Mix|Unsalted;Lightly Salted;Honey Roasted;Organic|8 oz;16 oz;3 lb
popcorn|Popcorn|grocery|2|8|soft_drinks;candy|Microwave Popcorn;Popcorn Kernels;Kettle Corn|Butter;Lightly Salted;Sweet & Salty;Movie Theater|3 ct;2 lb;12 ct
energy_protein_bars|Energy & Protein Bars|grocery|5|26|nuts_dried_fruit;sparkling_water|Protein Bars;Granola Bars;Energy Bites|Chocolate Peanut Butter;Oats & Honey;Almond Coconut;Blueberry|12 ct;24 ct;6 ct
soft_drinks|Soft Drinks|grocery|4|11|chips_pretzels;popcorn|Cola;Root Beer;Ginger Ale;Lemon-Lime Soda|Classic;Zero Sugar;Craft;Caffeine Free|12 x 12 oz;6 x 16.9 oz;2 L
juice|Juice|grocery|3|9|breakfast_cereal|Orange Juice;Apple Juice;Cranberry Juice;Grape Juice|100% Juice;No Pulp;Organic;Light|64 oz;8 x 6.75 oz;2 x 59 oz
sparkling_water|Sparkling Water|grocery|4|10|energy_protein_bars|Sparkling Water;Seltzer;Mineral Water|Lime;Lemon;Unflavored;Grapefruit;Berry|8 x 12 oz;12 x 12 oz;24 x 12 oz
baby_food|Baby Food|grocery|1|7|juice;breakfast_cereal|Baby Food Pouch;Baby Cereal;Teething Wafers|Apple & Pear;Sweet Potato;Oatmeal;Banana|4 oz;8 oz;12 pack
honey_jam_spreads|Honey, Jam & Spreads|grocery|3|13|crackers;tea|Raw Honey;Strawberry Jam;Peanut Butter;Almond Butter;Hazelnut Spread|Organic;Creamy;Crunchy;Wildflower;Classic|12 oz;16 oz;40 oz
gluten_free|Gluten-Free Foods|grocery|3|11|nuts_dried_fruit;baking_supplies|Gluten-Free Bread Mix;Gluten-Free Crackers;Gluten-Free Pasta;Gluten-Free Cookies|Classic;Multigrain;Rice-Based|12 oz;16 oz;3 pack
salsa_dips|Salsa & Dips|grocery|2.5|8|chips_pretzels|Salsa;Queso Dip;Hummus;Bean Dip|Medium;Mild;Hot;Roasted Red Pepper|15.5 oz;24 oz;10 oz
"""

_PET_BRANDS = ("Harvest Hound", "Whisker Table", "Prairie Paws", "Blue Meadow", "Tail Trail", "Nutri Nest",
               "Barkwell", "Feline Fine", "Sunny Perch", "Kibble Creek", "Northwood Pet", "Happy Burrow")
_GROCERY_BRANDS = ("Golden Acre", "Pantry Pride", "Morning Mill", "Hearth & Home", "Valley Fresh",
                   "Old Orchard Lane", "Blue Ridge", "Copper Kettle", "Green Basket", "Ember & Oak",
                   "Little Sprout", "Seaside Provisions", "Maple Hollow", "Sunrise Farms")

# Persona -> categories it leans towards (weight). Every user also keeps a small weight on all
# categories, so anyone can wander; the persona is the `segment` column of `users`.
SEGMENTS: dict[str, dict[str, float]] = {
    "dog_household": {"dog_food_dry": 6, "dog_food_wet": 3, "dog_treats": 4, "pet_supplements": 1.5},
    "cat_household": {"cat_food_dry": 5, "cat_food_wet": 4, "cat_litter": 4, "cat_treats": 2.5},
    "multi_pet": {"dog_food_dry": 3, "cat_food_dry": 3, "cat_litter": 2.5, "dog_treats": 2,
                  "small_animal_food": 2, "bird_seed": 1.5, "fish_food": 1.5},
    "coffee_and_tea": {"coffee": 7, "tea": 4, "creamer_sweetener": 3, "cookies": 1.5},
    "family_pantry": {"breakfast_cereal": 3, "pasta": 3, "pasta_sauce": 2.5, "juice": 2.5, "baby_food": 2,
                      "canned_soup": 2, "rice_grains": 2, "honey_jam_spreads": 1.5},
    "snacker": {"chips_pretzels": 5, "candy": 4, "chocolate": 3.5, "soft_drinks": 3, "popcorn": 2.5,
                "salsa_dips": 2, "cookies": 2},
    "health_focused": {"nuts_dried_fruit": 4, "energy_protein_bars": 4, "gluten_free": 3,
                       "sparkling_water": 3, "oatmeal_granola": 2.5, "tea": 1.5},
    "home_cook": {"spices_seasonings": 4, "oils_vinegar": 3.5, "baking_supplies": 3, "rice_grains": 2.5,
                  "canned_vegetables_beans": 2.5, "pasta": 2, "condiments": 2},
}
SEGMENT_SHARES: dict[str, float] = {
    "dog_household": 0.2, "cat_household": 0.18, "multi_pet": 0.07, "coffee_and_tea": 0.12,
    "family_pantry": 0.14, "snacker": 0.11, "health_focused": 0.1, "home_cook": 0.08,
}


@dataclass
class Catalog:
    """Categories and items as arrays the simulation can index (item index = row of `items`)."""

    categories: pd.DataFrame  # category_id, name, domain, complements (list of category indices)
    items: pd.DataFrame  # item_id, category_id, name, price (canonical) + popularity, poor_quality_prob
    item_cat: np.ndarray  # (n_items,) category index of each item
    item_price: np.ndarray  # (n_items,)
    item_poor_prob: np.ndarray  # (n_items,) chance that one unit bought turns out poor quality
    item_pair: np.ndarray  # (n_items,) the item most bought with it, from a complement category
    cat_item_cdf: np.ndarray  # (n_items,) category index + within-category popularity CDF
    cat_is_pet: np.ndarray  # (n_categories,) bool


def _parse_categories() -> list[dict]:
    rows = []
    for line in _CATEGORY_TABLE.strip().splitlines():
        cid, name, domain, lo, hi, comp, products, variants, sizes = line.split("|")
        rows.append({"category_id": cid, "name": name, "domain": domain, "price_lo": float(lo),
                     "price_hi": float(hi), "complement_ids": comp.split(";"),
                     "products": products.split(";"), "variants": variants.split(";"),
                     "sizes": sizes.split(";")})
    return rows


def category_ids() -> list[str]:
    """The demo shop's category ids, in index order."""
    return [row["category_id"] for row in _parse_categories()]


def build_catalog(n_items: int, rng: np.random.Generator, bad_item_share: float,
                  poor_prob_normal: float, poor_prob_bad: float) -> Catalog:
    """Draw `n_items` named, priced items over the fixed taxonomy.

    Args:
        n_items: Number of items (at least one per category).
        rng: Source of randomness (the caller seeds it).
        bad_item_share: Share of items from a "bad batch" that often disappoint.
        poor_prob_normal: Poor-quality chance per unit of an ordinary item.
        poor_prob_bad: Poor-quality chance per unit of a bad-batch item.
    """
    cats = _parse_categories()
    n_cat = len(cats)
    if n_items < n_cat:
        raise ValueError(f"n_items={n_items} is below the {n_cat} demo categories; pass n_items >= {n_cat}")
    index = {c["category_id"]: i for i, c in enumerate(cats)}
    # Category sizes: a few big aisles (pet food, snacks), many small ones.
    weights = rng.gamma(2.0, 1.0, n_cat) + np.array([1.5 if c["domain"] == "pet" else 0.0 for c in cats])
    sizes = np.maximum(1, np.floor(weights / weights.sum() * n_items)).astype(int)
    while sizes.sum() < n_items:
        sizes[rng.integers(n_cat)] += 1
    while sizes.sum() > n_items:
        sizes[np.argmax(sizes)] -= 1

    rows = []
    for ci, (cat, size) in enumerate(zip(cats, sizes)):
        brands = _PET_BRANDS if cat["domain"] == "pet" else _GROCERY_BRANDS
        combos = [(b, v, p, s) for b in brands for v in cat["variants"] for p in cat["products"]
                  for s in cat["sizes"]]
        picks = rng.choice(len(combos), size=size, replace=size > len(combos))
        size_rank = {s: k for k, s in enumerate(cat["sizes"])}
        for pick in picks:
            brand, variant, product, pack = combos[pick]
            # Bigger packs cost more: position of the size in the list scales the price band.
            frac = (size_rank[pack] + rng.uniform(0.0, 1.0)) / len(cat["sizes"])
            price = cat["price_lo"] + frac * (cat["price_hi"] - cat["price_lo"])
            rows.append({"category_index": ci, "name": f"{brand} {variant} {product}, {pack}",
                         "price": round(max(0.99, price) - 0.01, 2) + 0.0})
    items = pd.DataFrame(rows)
    n = len(items)
    items.insert(0, "item_id", [f"P{i:05d}" for i in range(1, n + 1)])
    item_cat = items["category_index"].to_numpy(np.int64)
    items["category_id"] = [cats[c]["category_id"] for c in item_cat]
    # Within-category popularity: Zipf-like, so a few items dominate each aisle.
    pop = np.empty(n)
    for ci in range(n_cat):
        members = np.flatnonzero(item_cat == ci)
        ranks = rng.permutation(len(members)) + 1
        pop[members] = 1.0 / ranks ** 0.9
    items["popularity"] = pop
    bad = rng.random(n) < bad_item_share
    items["poor_quality_prob"] = np.where(bad, poor_prob_bad, poor_prob_normal)

    cdf = np.empty(n)
    for ci in range(n_cat):
        members = np.flatnonzero(item_cat == ci)
        c = np.cumsum(pop[members])
        cdf[members] = ci + c / c[-1]
        cdf[members[-1]] = ci + 1.0  # exact top so a draw of ci + r (r < 1) always lands inside
    # Complement pairing: each item has one partner in one of its category's complements.
    comp_idx = [[index[c] for c in cat["complement_ids"]] for cat in cats]
    pair = np.empty(n, dtype=np.int64)
    for i in range(n):
        options = comp_idx[item_cat[i]]
        target = options[rng.integers(len(options))]
        members = np.flatnonzero(item_cat == target)
        p = pop[members] / pop[members].sum()
        pair[i] = members[rng.choice(len(members), p=p)]

    categories = pd.DataFrame({"category_id": [c["category_id"] for c in cats],
                               "name": [c["name"] for c in cats],
                               "domain": [c["domain"] for c in cats],
                               "complements": comp_idx})
    return Catalog(categories=categories,
                   items=items[["item_id", "category_id", "name", "price", "popularity", "poor_quality_prob"]],
                   item_cat=item_cat, item_price=items["price"].to_numpy(float),
                   item_poor_prob=items["poor_quality_prob"].to_numpy(float), item_pair=pair,
                   cat_item_cdf=cdf, cat_is_pet=np.array([c["domain"] == "pet" for c in cats]))


def segment_preferences(segments: np.ndarray, rng: np.random.Generator, concentration: float = 1.5
                        ) -> np.ndarray:
    """Per-user category preference vectors (n_users, n_categories), rows sum to 1.

    Each row is a Dirichlet draw around the persona's leanings, so two dog households
    share their aisle but not their exact mix.
    """
    ids = category_ids()
    names = list(SEGMENTS)
    base = np.full((len(names), len(ids)), 0.08)
    for si, name in enumerate(names):
        for cid, w in SEGMENTS[name].items():
            base[si, ids.index(cid)] += w
    alpha = concentration * base[segments]
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)
