"""Locust as an engine: profiles -> stages -> a Locust child process -> exact stats.

Never imports locust itself; `locust_plugin` is loaded only by the Locust child, which imports this
package on the way: so it imports nothing. Import the module that holds a name (`loadkit.load.runner`,
`loadkit.load.profiles` ...).
"""
