import time, pickle
t=time.time()
from tools.data.synth import generate_shop, DEMO_CUTOFFS
shop = generate_shop(n_users=5000, seed=0, progress=False)
print("gen", time.time()-t, DEMO_CUTOFFS)
e = shop.engagement_at(DEMO_CUTOFFS[-1]); print(e.head()); print(e.describe())
pickle.dump(shop, open("/tmp/p15-shop.pkl","wb"))
