"""What the emulators share: fault injection, service protection, the v4 call and its Result, the $batch runner.

It imports no emulator; the Azure AD guard of the Microsoft resources is sandbox.azuread.resource.
"""
