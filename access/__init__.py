"""Sign-in and roles: who may do what in Vectis, how they sign in (password with a second
factor, or single sign-on), and how long a session lasts."""
