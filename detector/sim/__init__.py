"""The follow simulator (`follow`) and its picture (`plot`): `robot-detector simulate-follow`."""
